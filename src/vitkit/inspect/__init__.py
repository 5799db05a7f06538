"""Looking inside a ViT: the analyses of §4.5 / App. D.7 of the paper.

* :func:`embedding_filter_components` - principal components of the patch-embedding filters (Fig. 7 left);
* :func:`position_similarity` - cosine similarity between position embeddings (Fig. 7 centre, Fig. 10);
* :func:`mean_attention_distance` - per layer and head, in pixels (Fig. 7 right);
* :func:`attention_rollout` / :func:`rollout_maps` - Attention Rollout maps (Fig. 6);
* :func:`analyse_attention` - distances, rollout and last-layer head maps in one pass;
* :func:`save_rollout_overlay` - one image's rollout drawn over it, as a PNG;
* :func:`write_report` - all of the above as figures, ``inspect.json`` and ``index.html``.

Every analysis returns numpy arrays; only :mod:`vitkit.inspect.report` and
:mod:`vitkit.inspect.overlay` draw.
"""

from vitkit.inspect.attention import AttentionAnalysis, analyse_attention
from vitkit.inspect.distance import attention_distance, mean_attention_distance, patch_distances
from vitkit.inspect.filters import FilterComponents, embedding_filter_components
from vitkit.inspect.images import NamedImage, default_images, load_images
from vitkit.inspect.overlay import overlay_map, save_rollout_overlay
from vitkit.inspect.posemb import patch_position_embeddings, position_similarity
from vitkit.inspect.report import write_report
from vitkit.inspect.rollout import attention_rollout, last_layer_head_maps, rollout_maps, rollout_matrix

__all__ = [
    "AttentionAnalysis",
    "FilterComponents",
    "NamedImage",
    "analyse_attention",
    "attention_distance",
    "attention_rollout",
    "default_images",
    "embedding_filter_components",
    "last_layer_head_maps",
    "load_images",
    "mean_attention_distance",
    "overlay_map",
    "patch_distances",
    "patch_position_embeddings",
    "position_similarity",
    "rollout_maps",
    "rollout_matrix",
    "save_rollout_overlay",
    "write_report",
]
