"""Looking inside a ViT: the analyses of §4.5 / App. D.7 of the paper.

* :func:`embedding_filter_components` - principal components of the patch-embedding filters (Fig. 7 left);
* :func:`position_similarity` - cosine similarity between position embeddings (Fig. 7 centre, Fig. 10);
* :func:`mean_attention_distance` - per layer and head, in pixels (Fig. 7 right);
* :func:`attention_rollout` / :func:`rollout_maps` - Attention Rollout maps (Fig. 6);
* :func:`save_rollout_overlay` - one image's rollout drawn over it, as a PNG;
* :func:`write_report` - all of the above as figures, a JSON file and ``index.html``.

Every analysis returns numpy arrays; only :mod:`vitkit.inspect.report` draws.
"""

from vitkit.inspect.overlay import overlay_map, save_rollout_overlay
from vitkit.inspect.rollout import attention_rollout, last_layer_head_maps, rollout_maps, rollout_matrix

__all__ = [
    "attention_rollout",
    "last_layer_head_maps",
    "overlay_map",
    "rollout_maps",
    "rollout_matrix",
    "save_rollout_overlay",
]
