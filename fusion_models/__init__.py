"""Fusion models of imaging, pathology and genomics: inputs, encoders, heads, training and inference."""

# The fusion model's public API, imported on first use: `import fusion_models.encoders`
# (the demo builder, the CLI's light paths) must not pay for torch and the model code.
_LAZY_EXPORTS = {
    "create_fusion_model": "fusion_models.neural_family",
    "list_fusion_models": "fusion_models.neural_family",
    "load_fusion_model": "fusion_models.inference",
    "predict": "fusion_models.inference",
}
__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module 'fusion_models' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_LAZY_EXPORTS[name]), name)
