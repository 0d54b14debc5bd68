"""Guards against forgetting, applied to a model's weights: WiSE-FT and AdaBN.

Fine-tuning can trade what pretraining taught for a little accuracy on the new task.
Two guards here act on the weights alone, so the result is the same plain Keras model
(no new layer, no custom object: it saves and loads without zoo-transfer):

- `wise_ft` (Wortsman et al., CVPR 2022): every weight becomes
  `(1 - alpha) * reference + alpha * fine_tuned`, the reference being the model before
  fine-tuning (in LP-FT, the model right after the linear probe). `wise_ft_sweep`
  scores a few alphas on validation images and keeps the best.
- `adapt_batchnorm` (AdaBN, Li et al., 2016): every BatchNorm layer's moving mean and
  variance re-estimated on the target images, nothing else changed.

The third guard, L2-SP, acts during training: `transfer_optimizer(model, l2_sp=alpha)`
(`zoo_transfer.optimizers`).

```python
reference = "runs/photos/probe.keras"      # or the model, or its get_weights()
zoo_transfer.wise_ft(model, 0.5, reference=reference)
zoo_transfer.adapt_batchnorm(model, splits)
```
"""

from zoo_transfer.guards.adabn import adapt_batchnorm
from zoo_transfer.guards.wise_ft import DEFAULT_ALPHAS, WiseFTSweep, wise_ft, wise_ft_sweep

__all__ = ["DEFAULT_ALPHAS", "WiseFTSweep", "adapt_batchnorm", "wise_ft", "wise_ft_sweep"]
