"""The simulator against real measurements: collectives and operators.

- :mod:`des.validate.calibration` - where the measurements live (one lookup:
  an explicit folder, ``$DES_CALIBRATION_DIR``, or ``../shared/calibration`` beside the
  checkout) and reading their CSV files;
- :mod:`des.validate.collectives` - every all-reduce row a preset system reproduces,
  simulated alone and compared (``des validate collectives``);
- :mod:`des.validate.operators` - a device's operator tables against the mapper
  (``des validate operators``).
"""

from des.validate.calibration import ENV_VAR, calibration_dir, default_calibration_dir, read_rows

__all__ = ["ENV_VAR", "calibration_dir", "default_calibration_dir", "read_rows"]
