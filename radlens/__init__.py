"""radlens: what did fine-tuning change inside my encoder?

Heavy libraries (torch, monai, radiomics, transformers) are imported lazily inside the
functions that need them, so ``import radlens`` and ``radlens --help`` stay fast.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
