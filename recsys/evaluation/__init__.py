"""Offline evaluation: ranking metrics, beyond-accuracy metrics, the evaluator, significance tests, TREC files, reports.

Public names are re-exported here and imported on first use (so importing the package
stays cheap: no torch or open_clip until a name that needs them is touched).
"""

from embeddings._lazy import reexport

__getattr__, __all__ = reexport(__name__, {
    **dict.fromkeys(['precision_at_k', 'recall_at_k', 'recall_at_k_capped', 'ndcg_at_k', 'ndcg_at_k_graded', 'map_at_k', 'map_at_k_capped', 'mrr_at_k', 'hit_rate_at_k', 'METRICS', 'BEYOND_METRIC_NAMES', 'parse_metric', 'compute_metrics', 'lists_to_csr', 'cut_lists'], "metrics"),
    **dict.fromkeys(['catalog_coverage', 'novelty_at_k', 'intra_list_diversity_at_k'], "beyond_accuracy"),
    **dict.fromkeys(['DEFAULT_METRICS', 'EvaluationResult', 'evaluate', 'rank_candidates', 'FULL_RANKING'], "evaluator"),
    **dict.fromkeys(['bootstrap_ci', 'paired_test', 'PAIRED_TESTS'], "significance"),
    **dict.fromkeys(['write_trec_run', 'write_trec_qrels', 'read_trec_run', 'read_trec_qrels'], "trec"),
    **dict.fromkeys(['markdown_table', 'summary_with_ci', 'pairwise_significance', 'plot_bars_with_ci', 'plot_metric_vs_k'], "report"),
    **dict.fromkeys(['ColdStartResult', 'evaluate_cold_start', 'TABLES'], "coldstart"),
})
