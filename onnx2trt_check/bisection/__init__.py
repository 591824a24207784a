"""Bisecting accuracy problems: the first divergent layer (layerwise), the precision-sensitive nodes
and the smallest fp32 fallback set (sensitivity), a minimal failing subgraph (reduce), and a
per-layer error plot (plot)."""
