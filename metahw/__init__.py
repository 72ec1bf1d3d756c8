"""metahw: meta-learners (few-shot learners) down to verified fixed-point hardware.

`metahw.export_embedding_episode` (from `metahw.models.embedding_export`) turns a few-shot
embedding trained anywhere into metahw's whole-episode ONNX graph; it is imported on first
use, so that `import metahw` stays light.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "export_embedding_episode"]


def __getattr__(name: str):
    """Lazy re-exports: the public functions whose modules pull in torch and onnx."""
    if name == "export_embedding_episode":
        from metahw.models.embedding_export import export_embedding_episode

        return export_embedding_episode
    raise AttributeError(f"module 'metahw' has no attribute {name!r}")
