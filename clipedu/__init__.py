"""clipedu: CLIP (Radford et al. 2021) built from scratch, one readable module per concept.

The paper lives flat in this folder, in the order the course reads it. Each row:
the module, the notebook that teaches it, the paper section it implements.

    module          notebook                        paper
    pretokenize.py  03 tokenizer                    2.4  text cleaning, CLIP's word regex, byte symbols
    tokenizer.py    03 tokenizer                    2.4  lower-cased byte-level BPE (CLIP's 49,408 ids)
    transformer.py  04 text encoder                 2.4  the pre-LN residual attention block of both towers
    vision.py       05 image encoders               2.4  the Vision Transformer (with CLIP's extra ln_pre)
    resnet.py       05 image encoders               2.4  the modified ResNet with attention pooling
    model.py        04-06 (and 08, 15)              2.4, Fig. 3  two towers, projections, L2 norm, temperature
    transforms.py   02 data, 08 training            2.3  resize/centre crop/normalise; the random square crop
    embed.py        06 shared space (and 07-20)     Fig. 3  batched, normalised image and text embeddings
    loss.py         07 contrastive loss             2.3, Fig. 3  symmetric InfoNCE; 2.5 the clamp at 100
    zeroshot.py     09 zero-shot                    3.1.2  classifiers from prompts; 3.1.4 ensembling
    templates.py    09 zero-shot, 20 prompts        3.1.4  the 80 ImageNet prompt templates
    retrieval.py    10 retrieval                    App. E, Table 13  search and Recall@K both ways
    probe.py        12 probes and fine-tuning       3.2, 3.1.5 (Fig. 6)  linear probes, few-shot curves
    weights.py      15 real weights                 2.5  the released RN50 ... ViT-L/14@336px weights
    weights_file.py 15 real weights                 -    a weights file's format, its state dict, conversion
    weights_hf.py   15 real weights                 -    Hugging Face transformers' CLIP layout, both ways
    download.py     15 real weights                 2.5  OpenAI's released files, verified by SHA-256, resumable
    checkpoint.py   (used by 08 training)           -    atomic, weights_only checkpoints
    errors.py       -                               -    ClipeduError, the base of clipedu's own errors

Four packages, named after who reads them, sit around the paper:

    data/           02 data        2.2  the captioned worlds: shapes, digits, your own folders; batches
    train/          08, 13         2.5  `python -m clipedu.train`: config, setup, the loop, the course model
    experiments/    01, 14, 17-20  beyond the main line: captioners (2.1), Fig. 2's objectives (2.3), limits (6),
                                   SigLIP, the modality gap, prompts measured (3.1.4)
    course/         every notebook      `python -m clipedu.course`: student notebooks, checks, figures

Dependencies run one way: core (this folder) <- data <- train <- experiments;
course may import anything and nothing imports course (tests/test_layering.py).
docs/design.md is the full map.

The names most notebooks start from are re-exported here; the rest are imported
from their module (`from clipedu.probe import linear_probe`: probe.py loads
scikit-learn, which `import clipedu` does not pay for).
"""

from clipedu.embed import encode_images, encode_texts
from clipedu.errors import ClipeduError
from clipedu.loss import clip_loss, siglip_loss
from clipedu.model import CLIP, CLIPConfig, build_model, get_config
from clipedu.retrieval import recall_at_k
from clipedu.tokenizer import BPETokenizer, clip_tokenizer
from clipedu.transforms import preprocess
from clipedu.weights import load_clip
from clipedu.zeroshot import zeroshot_classifier

__version__ = "0.1.0"

__all__ = [
    "BPETokenizer", "clip_tokenizer",
    "CLIP", "CLIPConfig", "get_config", "build_model",
    "preprocess",
    "encode_images", "encode_texts",
    "clip_loss", "siglip_loss",
    "zeroshot_classifier",
    "recall_at_k",
    "load_clip",
    "ClipeduError",
]
