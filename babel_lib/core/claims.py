"""The paper's claims and the rule set that turns test results into verdict words.

Claims are quoted from the paper's abstracts (:data:`CLAIMS`); where an abstract names a question
rather than a result, the claim tested is stated as such (``tested``). A verdict row
(:func:`row`, :func:`descriptive`) carries a claim, our result, the evidence and one word of
:data:`VERDICTS`, chosen by :func:`decide`. How rows are shown and gathered into the scorecard is
:mod:`babel_lib.report.verdicts`.
"""


from __future__ import annotations

from dataclasses import dataclass


#: The verdict words of every table (one per row); "descriptive" marks a statement no outcome could
#: refute ("we designed", "we analysed"): the scorecard counts it apart from the verdicts.
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable here", "descriptive")
#: The words that are verdicts on a claim (everything but "descriptive").
TESTED_VERDICTS = VERDICTS[:4]
#: What a descriptive row says as its evidence.
DESCRIPTIVE_EVIDENCE = "a statement of what was done, which no outcome could refute; counted apart from the verdicts"

EMNLP = "EMNLP 2024 abstract"
ARXIV_V1 = "arXiv v1 abstract (Feb 2024)"


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: the words quoted, where they come from, and what this book tests, in its own
    words (the Answer box's "Tested:"; empty only for descriptive statements, which nothing tests)."""

    quote: str
    source: str
    tested: str = ""
    #: the claim in a few words (the scorecard's column)
    short: str = ""
    #: the question a chapter answers about it (the first line of the chapter's Answer box)
    question: str = ""


CLAIMS: dict[str, Claim] = {
    "moefication_design": Claim(
        "We designed a method to convert dense LLMs into fine-grained MoE architectures", EMNLP,
        short="A method to convert dense LLMs into experts",
        question="Can a dense model's feed-forward layers be converted into fine-grained experts?"),
    "activation_analysis": Claim(
        "we analyzed the similarities and differences in the internal neuron activation patterns of LLMs "
        "when processing different languages", EMNLP,
        short="Activation patterns analysed per language",
        question="What does each language's map of expert activations look like?"),
    "high_frequency_investigation": Claim(
        "we investigated the distribution of high-frequency activated experts", EMNLP,
        short="High-frequency experts investigated",
        question="Where do the high-frequency experts sit?"),
    "moefication": Claim(
        "We designed a method to convert dense LLMs into fine-grained MoE architectures", EMNLP,
        "the converted model with every expert on is the dense model, and its activated experts carry more of "
        "the activation than a random grouping of neurons",
        short="Dense FFN as fine-grained experts",
        question="Is the converted model the dense model, with experts that carry the activation?"),
    "heatmaps": Claim(
        "we analyzed the similarities and differences in the internal neuron activation patterns of LLMs "
        "when processing different languages", EMNLP,
        "languages share a common map of frequently used experts and depart from it measurably beyond "
        "sampling noise",
        short="A common map; languages depart from it",
        question="Do languages share a map of busy experts and depart from it beyond noise?"),
    "specific_neurons": Claim(
        "We discover the existence of non-language-specific neurons as well as language-specific activation "
        "neurons.", ARXIV_V1,
        "more experts are high-frequency in exactly one language than if the languages did not differ",
        short="Language-specific and shared neurons",
        question="Are there language-specific as well as shared neurons?"),
    "high_frequency": Claim(
        "we investigated the distribution of high-frequency activated experts", EMNLP,
        "high-frequency experts exist and are not spread evenly over the depth of the network",
        short="High-frequency experts, uneven over depth",
        question="Do high-frequency experts exist, and are they spread unevenly over the layers?"),
    "shared": Claim(
        "multilingual shared experts", EMNLP,
        "some experts are high-frequency in every language (shared) and not on random tokens (multilingual, "
        "not always-on)",
        short="Multilingual experts shared by every language",
        question="Are some experts high-frequency in every language without being busy on any input?"),
    "families": Claim(
        "whether multilingual activation patterns are related to language families", EMNLP,
        "languages of one family have closer activation profiles than languages of different families",
        short="Patterns follow language families",
        question="Are languages of one family closer in activation than languages of different families?"),
    "families_v1": Claim(
        "demonstrate the connections of these activation patterns at the level of language families", ARXIV_V1,
        "the dendrogram of the language profiles, cut into flat clusters, groups the languages by family more "
        "than chance",
        short="Family-level structure",
        question="Do the activation patterns recover the language families as groups?"),
    "sisters": Claim(
        "(not in the paper) the activation patterns follow genealogy down to its last split", "this book",
        "two sister languages (the same Glottolog parent clade) have closer expert profiles than either has to "
        "their nearest cousin (the closest relative of the same family and script under another parent clade)",
        short="Sisters closer than cousins (ours)",
        question="Are sister languages closer in activation than their nearest cousins?"),
    "model_families": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns found in one model (depth profile, language distances) hold in a model of another family",
        short="Holds in another model family",
        question="Do the patterns of one model hold in a model of another family?"),
    "model_sizes": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns hold across two sizes of one model family (language distances and depth profiles; "
        "variants of one model are not testable offline)",
        short="Holds across sizes and variants",
        question="Do the patterns hold across model sizes and variants?"),
    "instruction_tuning": Claim(
        "the impact of instruction tuning on activation patterns", EMNLP,
        "instruction tuning changes a language's activation profile beyond sampling noise",
        short="Instruction tuning changes the patterns",
        question="Does instruction tuning change a language's activation profile beyond noise?"),
    "tuning_beyond_placebo": Claim(
        "(not in the paper) the change comes from instruction tuning, not from any fine-tune of its size",
        "this book",
        "instruction tuning moves a language's profile further than the same recipe on plain text (no "
        "instructions) and further than a random weight change of the tuning's norm",
        short="Beyond placebo fine-tunes (ours)",
        question="Does instruction tuning move the profiles further than a placebo fine-tune of the same size?"),
    "beats_random": Claim("our method significantly outperformed random expert pruning", EMNLP,
        "pruning a language's least frequently activated experts raises its held-out perplexity less than "
        "pruning random experts at the same rate",
        short="Frequency pruning beats random",
        question="Does pruning by a language's expert frequency beat random pruning?"),
    "beats_dense": Claim("and even exceeded the performance of unpruned models in some languages", EMNLP,
        "in some language, a model pruned for it has a lower held-out perplexity than the unpruned model "
        "beyond noise",
        short="Pruned beats unpruned in some languages",
        question="Does a pruned model beat the unpruned one in some language?"),
    "layerwise": Claim(
        "configuring different pruning rates for different layers based on activation level differences could "
        "achieve better results", EMNLP,
        "per-layer pruning rates from activation differences (our two rules) give a lower held-out perplexity "
        "than one uniform rate at the same budget",
        short="Per-layer pruning rates help",
        question="Do per-layer pruning rates beat one uniform rate at the same budget?"),
    "sparse_activation": Claim(
        "merely leveraging high-frequency activation neurons can accelerate inference while maintaining "
        "comparable performance", ARXIV_V1,
        "keeping only a language's high-frequency experts is measurably faster and keeps the perplexity within "
        "our threshold of comparable",
        short="Only frequent experts: faster, as good",
        question="Does computing only the high-frequency experts speed up inference at comparable quality?"),
    "specific_causal": Claim(
        "We discover the existence of non-language-specific neurons as well as language-specific activation "
        "neurons.", ARXIV_V1,
        "a language's specific experts are necessary for it: switching them off harms that language more than the "
        "other languages and more than random experts of the same layers and busyness (a causal test)",
        short="Specific experts are necessary (causal)",
        question="Does switching off a language's specific experts harm that language more than matched controls?"),
    "output_language": Claim(
        "(not in the paper) a language's specific experts control the language the model writes", "this book",
        "switching them off makes continuations leave the language more often than matched controls do",
        short="Specific experts steer the output language",
        question="Do a language's specific experts control the language the model writes?"),
    "routing_competence": Claim(
        "(not in the paper) how far a language's routing is from the dominant language's predicts where the model "
        "is weak", "this book",
        "the distance of a language's expert profile from English's correlates with the model's bits per character "
        "beyond tokens per character and script",
        short="Distance from English predicts weakness",
        question="Does a language's routing distance from English predict where the model is weak?"),
    "definitions_robust": Claim(
        "(not in the paper) the book's verdicts on languages do not depend on its choice of definitions",
        "this book",
        "chapters 4 and 5's verdicts keep their word when one definition changes: the top-k fraction, the expert "
        "size, the high-frequency ratio, the partition seed, or no experts at all (the neuron view)",
        short="Verdicts hold under other definitions (ours)",
        question="Do the verdicts on shared, specific experts and families change under other definitions?"),
    "cross_domain": Claim(
        "(not in the paper) the activation patterns belong to the language rather than to the text", "this book",
        "a language's profile on one corpus is closer to its own profile on another corpus than to other "
        "languages' profiles on the same corpus",
        short="Patterns belong to the language (ours)",
        question="Does a profile belong to the language rather than to the text?"),
}

COLUMNS = ["claim", "source", "tested", "result", "evidence", "verdict"]


def verdict(claim: str, result: str, evidence: str, verdict: str) -> dict:
    """One row of a verdict table: {'claim', 'result', 'evidence', 'verdict'}; ``verdict`` must be one of
    :data:`VERDICTS` (ValueError otherwise)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"claim": claim, "result": result, "evidence": evidence, "verdict": verdict}


def row(claim: str, result: str, evidence: str, word: str) -> dict:
    """One verdict: the claim's id in :data:`CLAIMS`, our result (with its interval), the strength of the
    evidence in words, and one of :data:`VERDICTS`."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; claims: {', '.join(CLAIMS)}")
    c = CLAIMS[claim]
    out = verdict(f"“{c.quote}”", result, evidence, word)
    return {"claim": out["claim"], "source": c.source, "tested": c.tested, "result": out["result"],
            "evidence": out["evidence"], "verdict": out["verdict"]}


def descriptive(claim: str, result: str) -> dict:
    """A row for a statement of the paper that no outcome could refute ("we designed", "we analysed"):
    what this book did about it, labelled "descriptive" and counted apart in the scorecard."""
    return row(claim, result, DESCRIPTIVE_EVIDENCE, "descriptive")


def decide(passed, *, robust: bool = True, null_can_fail=True) -> str:
    """The one rule set behind every verdict word of a tested claim.

    passed: for each of the claim's tests, whether it passes: its p-value after the book's correction is
    below 0.05 and its effect's interval lies beyond the null (bool or a sequence of bool).
    robust: whether every passing test still passes (interval beyond the null) in the robustness views
    (other partition seeds, the neuron view, other definitions).
    null_can_fail: for each test (or one bool for all), whether its null could have rejected the claim on
    some model and text; a test against a null that any model rejects (uniform use, an even spread,
    independent placement) counts as not passing.

    =================================================  ====================
    tests                                              verdict
    =================================================  ====================
    no test, or none whose null could fail             not testable here
    every test passes, and robust                      reproduced
    some pass (or all pass but not robust)             partly reproduced
    none passes                                        not reproduced
    =================================================  ====================

    A statement no outcome could refute gets no test and is not decided here: see :func:`descriptive`.
    """
    import numpy as np

    passed = np.atleast_1d(np.asarray(passed, dtype=bool))
    fair = np.broadcast_to(np.atleast_1d(np.asarray(null_can_fail, dtype=bool)), passed.shape)
    if passed.size == 0 or not fair.any():
        return "not testable here"
    ok = passed & fair
    if ok.all() and robust:
        return "reproduced"
    if ok.any():
        return "partly reproduced"
    return "not reproduced"
