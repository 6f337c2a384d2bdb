"""The recommender core around the models: candidate sources, fusion, the two-stage recommender, tuning, training and model folders.

Public names are re-exported here and imported on first use (so importing the package
stays cheap: no torch or open_clip until a name that needs them is touched).
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(['CollaborativeSource', 'ContentSource', 'PopularitySource'], "candidates"),
    **dict.fromkeys(['FusedList', 'reciprocal_rank_fusion', 'weighted_score_fusion', 'collaborative_first', 'FUSIONS'], "fusion"),
    **dict.fromkeys(['TwoStageRecommender', 'long_term_interest', 'tune_two_stage', 'COLD_START_FALLBACK'], "two_stage"),
    **dict.fromkeys(['DEFAULT_GRIDS', 'SIMPLER', 'TIE_REL', 'TIE_TOL', 'TuningResult', 'validation_split', 'tune', 'expand_grid', 'pick_best'], "tuning"),
    **dict.fromkeys(['load_item_embeddings', 'train_ranker', 'recommend_two_stage', 'UNKNOWN_USER_FALLBACK'], "training"),
    **dict.fromkeys(['TrainedModel', 'save_trained', 'load_trained'], "artifacts"),
    **dict.fromkeys(['train_ltr'], "ltr_training"),
})
