"""DELIFT's pairwise utility kernel: computation, post-processing and the on-disk cache."""

from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.postprocess import postprocess_kernel
from delift.kernel.utility import AGGREGATES, KernelRequest, KernelSettings, UtilityKernel, overflowing_targets

__all__ = [
    "AGGREGATES",
    "KernelCache",
    "KernelRequest",
    "KernelSettings",
    "UtilityKernel",
    "kernel_cache_key",
    "overflowing_targets",
    "postprocess_kernel",
]
