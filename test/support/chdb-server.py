"""Serve the ClickHouse HTTP interface from chdb's libchdb.so (local runs and tests only).

ClickHouse's stack checks need a native main thread, which Node cannot give it, so this tiny
launcher calls chdb_query_cmdline() from Python. The query opens the HTTP listener and then
blocks (one sleeping row per second) for as long as the process lives; SIGTERM ends it.
usage: chdb-server.py LIBCHDB DATA_DIR HTTP_PORT [CONFIG_FILE]
CONFIG_FILE: server settings (e.g. the query and part logs `npm run bench:engine` reads).
"""
import ctypes
import sys

lib_path, data_dir, port = sys.argv[1], sys.argv[2], sys.argv[3]
config = [f"--config-file={sys.argv[4]}"] if len(sys.argv) > 4 else []
lib = ctypes.CDLL(lib_path)
args = [
    "clickhouse",
    f"--path={data_dir}",
    f"--http_port={port}",
    "--listen_host=127.0.0.1",
    "--multiquery",
    *config,
    "--query",
    "SYSTEM START LISTEN HTTP; "
    "SELECT sleepEachRow(1) FROM system.numbers "
    "SETTINGS function_sleep_max_microseconds_per_block = 0, max_block_size = 1 FORMAT Null",
]
argv = (ctypes.c_char_p * len(args))(*[a.encode() for a in args])
lib.chdb_query_cmdline.restype = ctypes.c_void_p
lib.chdb_query_cmdline(len(args), argv)
sys.exit("chdb server stopped")
