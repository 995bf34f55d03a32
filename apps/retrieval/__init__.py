"""Image-level retrieval: data set layouts, a decoded-image dataset, and the embedding model.

The names are imported from their modules when first used (PEP 562), so that ``coseg retrieval --help`` and the
command line's parsing, which import this package, do not wait for timm, torchvision and kornia."""
import importlib

_MODULE_OF = {
    **dict.fromkeys(("RETRIEVAL_LAYOUTS", "Entry", "Record", "RetrievalSplit", "detect_retrieval_layout",
                     "load_retrieval_split"), "apps.retrieval.datasets"),
    "RetrievalImageDataset": "apps.retrieval.image_dataset",
    **dict.fromkeys(("DEFAULT_BACKBONE", "RetrievalModel", "create_retrieval_model", "load_retrieval_model"),
                    "apps.retrieval.model"),
    **dict.fromkeys(("POOLINGS", "AvgPool", "GeM"), "apps.retrieval.pooling"),
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
