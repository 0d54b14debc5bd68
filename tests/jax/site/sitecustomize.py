"""Makes `import tensorflow` fail in every process of the JAX test job (its children too).

Active only with ZOO_TRANSFER_BLOCK_TF=1, which `tests/test_jax_job.py` sets with this
folder on PYTHONPATH. A meta-path finder, not `sys.modules["tensorflow"] = None`:
Keras takes a `tensorflow` key in `sys.modules` as "TensorFlow is in use".
"""

import os
import sys

if os.environ.get("ZOO_TRANSFER_BLOCK_TF") == "1":

    class _NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                raise ImportError(f"{name} is blocked in the JAX test job")
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
