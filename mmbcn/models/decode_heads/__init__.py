"""mmseg decode heads, imported on their own (each imports mmseg; ``import mmbcn`` does not):
``custom_imports=dict(imports=['mmbcn', 'mmbcn.models.decode_heads.pool_norm_aspp_head'])``."""
