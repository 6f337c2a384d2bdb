"""The application layer: pipeline files (config), the pipeline and its stages, the quickstart and its report.

Public names are re-exported here and imported on first use (so importing the package
stays cheap: no torch or open_clip until a name that needs them is touched).
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(['SCHEMA', 'PipelineConfigError', 'load_pipeline', 'resolve_pipeline', 'to_toml'], "config"),
    **dict.fromkeys(['run_pipeline', 'check_rerun', 'RunResult', 'PipelineError'], "pipeline"),
    **dict.fromkeys(['embed_catalog', 'build_index', 'split_interactions', 'train_model', 'evaluate_models', 'recommend_users', 'QueryOutcome', 'run_queries', 'open_encoder_for_index'], "stages"),
    **dict.fromkeys(['make_quickstart_inputs', 'run_quickstart', 'QUICKSTART_QUERIES'], "quickstart"),
    **dict.fromkeys(['markdown_table', 'plot_metrics', 'plot_query_confidence', 'write_report'], "report"),
    **dict.fromkeys(['write_evaluation'], "evaluate"),
})
