"""Files the package reads at run time (CLIP's BPE merges, with openai's licence), via importlib.resources."""
