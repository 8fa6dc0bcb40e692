"""Settings: the catalogue of every setting, loading and validation, secrets, API URLs."""
