"""Kernel latency predictors and whole-network prediction."""

__all__ = ["CONTEXT_FILE", "FALLBACK", "FAR"]

# The name the fallback model (every kernel, generic features) is saved and reported under.
FALLBACK = "fallback"
# The folder, beside a recipe's models, of its models of kernels timed the recipe's far way (Recipe.far_caches).
FAR = "far"
# The file, beside a recipe's models, of where the device's networks run between the two ways (edgelat.predictors.context).
CONTEXT_FILE = "context.json"
