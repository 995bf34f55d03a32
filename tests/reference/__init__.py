"""Naive reference implementations (plain Python loops over tiny inputs), one module per family.

Every vectorised component in ``metric/`` and ``coseg/`` is checked against one of these."""
