"""Benchmark toolchain: bench records (schema ``mlxk.bench-record.v1``), machine facts,
scenarios (text, stt, server, memory, startup), the memmon sampler and memplot pictures.

Nothing here imports mlx at module import time: scenarios that need it import it inside
functions, after ``backends.platform.setup_platform`` has preloaded a BLAS on Linux CPU.
"""

SCHEMA_ID = "mlxk.bench-record.v1"
MEMMON_SCHEMA_ID = "mlxk.memmon.v1"
