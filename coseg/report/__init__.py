"""Static HTML reports of training runs, evaluations and predictions (``coseg report``): ``build.build_report``
assembles them from the result files (``files``) with tables and pages (``html``), plots (``plots``), thumbnails
(``thumbnails``), and one module per kind of content (``training``, ``segmentation``, ``retrieval``)."""
