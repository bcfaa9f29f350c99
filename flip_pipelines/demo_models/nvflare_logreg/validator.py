"""Loss and accuracy of the received global weights on the site's validation split."""

import models
import numpy as np


def validate(weights: dict, context) -> dict:
    x, y = models.load_site_data(context.site_name, context.config, "validation")
    accuracy = float(np.mean((models.predict(weights, x) > 0.5) == (y > 0.5)))
    return {"val_loss": models.log_loss(weights, x, y), "val_accuracy": accuracy}
