"Everything a notebook needs: `from ulmfit_lib.all import *` (fastai-style; the package itself uses explicit imports)."
from .basics import *
from .data import *
from .tokenize import *
from .corpus import *
from .numericalize import *
from .lm_data import *
from .awd_lstm import *
from .clas_data import *
from .learner import *
from .pretrained import *
from .profile import *
from .imdb_data import *
from .stages import *
from .sweep import *
from .ulmfit import *
from .inference import *
from .interpret import *
from .predict import *
from .baseline import *
from .distributed import *   # also gives `Learner` fastai's `distrib_ctx`, `to_distributed`
from fastai.distributed import DistributedTrainer, DistributedDL, rank0_first, setup_distrib, teardown_distrib
from fastai.torch_core import distrib_barrier, rank_distrib, num_distrib

# The fastai and fastcore names that fastbook's text chapters use beside ours (`fastai.text.all`
# brings them there), so the book's code runs as written after `from ulmfit_lib.all import *`.
from functools import partial
from collections import Counter
import numpy as np
import pandas as pd
import torch
from fastcore.foundation import L, coll_repr
from fastcore.basics import first
from fastai.data.external import untar_data, URLs
from fastai.data.block import DataBlock, CategoryBlock, MultiCategoryBlock
from fastai.data.transforms import (get_text_files, parent_label, GrandparentSplitter, RandomSplitter, ColReader, ColSplitter,
                                    IndexSplitter)
from fastai.metrics import accuracy, Perplexity
from fastai.learner import load_learner   # fastai's: loads `learn.export()` (a pickle: only files you trust)
