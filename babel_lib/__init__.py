"""babel_lib: MoEfication, expert-activation profiling, analysis and pruning of dense LLMs."""

import warnings

# tqdm.auto (imported by dependencies) warns inside notebooks without ipywidgets; bars still work.
warnings.filterwarnings("ignore", message="IProgress not found")
