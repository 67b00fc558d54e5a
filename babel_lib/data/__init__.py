"""The texts: the parallel corpora (UDHR, the Bible) and their language metadata, the Glottolog tree, the
instruction set of chapter 7. The corpora's files live in this folder.

Modules: corpus, bible, genealogy, instructions. Import them by name (``from babel_lib.data import corpus``).
"""

__all__ = ["corpus", "bible", "genealogy", "instructions"]
