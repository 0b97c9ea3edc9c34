"Everything a notebook needs: `from ulmfit_lib.all import *` (fastai-style; the package itself uses explicit imports)."
from .data import *
from .tokenize import *
from .numericalize import *
from .lm_data import *
from .awd_lstm import *
from .clas_data import *
from .learner import *
from .ulmfit import *
