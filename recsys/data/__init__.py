"""Interaction logs: loading and id maps (interactions), public datasets (datasets), train/test protocols (splits).

Public names are re-exported here and imported on first use (so importing the package
stays cheap: no torch or open_clip until a name that needs them is touched).
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(['INTERACTION_COLUMNS', 'COLUMN_ALIASES', 'InteractionFileError', 'load_interactions', 'drop_duplicate_interactions', 'Dataset', 'build_dataset'], "interactions"),
    **dict.fromkeys(['SOURCES', 'Source', 'download', 'load_movielens', 'load_movielens_items', 'load_kuairec', 'load_kuairec_items', 'load_kuairand', 'load_microlens', 'load_log', 'KUAIREC_LIKE_THRESHOLD', 'ShortVideoData', 'load_dataset', 'load_microlens_50k', 'load_tiktok_mmssl', 'DATASETS'], "datasets"),
    **dict.fromkeys(['cold_item_split', 'random_holdout', 'leave_last_out', 'temporal_split', 'stratified_split', 'chrono_stratified_split', 'recommenders_split', 'RECOMMENDERS_SPLIT', 'k_fold', 'validation_split', 'VALIDATION_METHODS'], "splits"),
    **dict.fromkeys(['ItemDataError', 'read_sequences', 'load_item_features', 'load_item_text', 'SEQUENCE_REPEATS'], "side"),
})
