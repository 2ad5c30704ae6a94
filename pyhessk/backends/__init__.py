"""pyhessk's engines; each subpackage exposes ``BACKEND``, an object implementing ``_base.Backend``."""
