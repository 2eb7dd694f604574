"""Where the files that ship with the code are: the checkout, its models and melodies.

>>> (BUNDLED_MELODIES / "ode_to_joy.mid").is_file(), SHIPPED_MODELS.name
(True, 'models')
"""

from __future__ import annotations

from pathlib import Path

DEVICE_DIR = Path(__file__).resolve().parent
REPO = DEVICE_DIR.parent  # the checkout: device/, host/, models/ ...
SHIPPED_MODELS = REPO / "models"
BUNDLED_MELODIES = DEVICE_DIR / "melodies"
STATE_MODELS = Path("/var/lib/deepkeys/models")  # where deploy puts models on the Pi
