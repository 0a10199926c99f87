"""Everything specific to the public ISBI-2015 HRNet-W32 checkpoint.

- :mod:`.hub`: where the file comes from (a local path or the Hugging Face Hub) and
  ``cephalo fetch-model``;
- :mod:`.split`: the ISBI image numbers the public model was trained / validated / tested on;
- :mod:`.reference`: the deterministic reference weights and input of the checkpoint's spec
  (tests and conversion checks; imports torch, so it is not imported here).

- :mod:`.checkpoint`: reading the file into a model (``load_public_hrnet``; its layout and
  ``ModelMeta`` are read by :mod:`cephalo.models.public_layout`, a reader the checkpoint loader is
  given; imports torch, so it is not imported here).
"""

from .hub import (
    HF_FILENAME,
    HF_REPO_ID,
    ModelSource,
    ResolvedCheckpoint,
    UnpinnedRevisionWarning,
    fetch_model,
    resolve_checkpoint,
)
from .split import PUBLIC_HRNET_SPLIT

__all__ = [
    "HF_REPO_ID",
    "HF_FILENAME",
    "ModelSource",
    "ResolvedCheckpoint",
    "resolve_checkpoint",
    "fetch_model",
    "UnpinnedRevisionWarning",
    "PUBLIC_HRNET_SPLIT",
]
