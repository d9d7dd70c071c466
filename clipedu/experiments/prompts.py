"""Prompt engineering, measured (notebook 20; paper 3.1.4): which templates help, and by how much.

`template_features` embeds every class written into every template;
`greedy_templates` builds an ensemble one template at a time (forward selection);
`interval95` says whether a difference in accuracy is more than noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clipedu.zeroshot import classify_features, ensemble_prompts, prompt_features

# The bare class name first, then forms our captions use ("a {}", "there is a {}", "a small {}") and forms
# they never use, among them prompts written for photographs ("a high quality photo of a {}").
PROMPT_TEMPLATES = [
    "{}", "a {}", "a photo of a {}", "a picture of a {}", "there is a {}", "a photo of the {}",
    "a {}, a kind of shape", "a high quality photo of a {}", "{} in the scene", "a rendering of a {}",
    "a small {}", "a large {}", "a {} in the centre", "a {} on a white background", "a drawing of a {}",
    "the {}", "this is a {}", "a blurry photo of a {}",
]


def template_features(model: nn.Module, tokenizer, prompts) -> torch.Tensor:
    """Unit prompt embeddings [C, T, D] from prompts[c][t], class c written into template t.

    `zeroshot.prompt_features`, cutting prompts too long for the model as training
    does: a template study must not stop at one long template.
    `ShapesWorld.prompts(templates)` gives the prompts (with "an" before vowels).
    """
    return prompt_features(model, tokenizer, prompts, truncate=True)


def ensemble_correct(image_features: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                     chosen) -> torch.Tensor:
    """Per image, 1.0 if the classifier ensembled from the templates `chosen` ([C, T, D] columns) is right."""
    return (classify_features(image_features, ensemble_prompts(features[:, list(chosen)])) == labels).float()


def greedy_templates(image_features, labels, features: torch.Tensor, k: int) -> list[int]:
    """k template indices, each the one that most raises the ensemble's accuracy (ties: the earlier template)."""
    chosen: list[int] = []
    for _ in range(min(k, features.shape[1])):
        scores = [(ensemble_correct(image_features, labels, features, chosen + [t]).mean().item(), -t)
                  for t in range(features.shape[1]) if t not in chosen]
        chosen.append(-max(scores)[1])
    return chosen


def interval95(values: torch.Tensor) -> float:
    """Half-width of the 95% normal interval of the mean of per-image values (0/1, or paired differences)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    return 0.0 if len(values) < 2 else 1.96 * values.std().item() / math.sqrt(len(values))
