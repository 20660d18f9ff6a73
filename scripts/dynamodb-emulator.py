#!/usr/bin/env python3
"""A local DynamoDB API for the tests: moto's WSGI app served by werkzeug on
127.0.0.1, single-threaded.

moto's own `moto_server` serves requests on many threads without a lock, and
then a conditional write can lose an update under concurrency; one thread
makes every request atomic, as DynamoDB's conditional writes are.

Usage: dynamodb-emulator.py [--port N] [--port-file PATH]
Port 0 (the default) takes a free port; the port is printed as
`listening on 127.0.0.1:PORT` and, with --port-file, written to PATH.
Needs: pip install "moto[server]"
"""

import argparse
import logging
import sys

try:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        create_backend_app,
    )
    from werkzeug.serving import make_server
except ImportError as missing:
    sys.exit(f'{missing}: install the emulator with: pip install "moto[server]"')


def copy_each_table_once_per_transaction() -> None:
    """moto backs up a table before a TransactWriteItems by deep-copying it
    once per item of the transaction: a 100-item transaction on a table of
    1000 items copies 100 000 items and takes seconds. Copying each table
    once per transaction is the same backup (nothing changes the table while
    the backups are taken) at 1/100 of the cost."""
    import copy

    import moto.dynamodb.models as models

    backups: dict = {}

    class TableCopiedOnce:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if not isinstance(value, models.Table):
                return copy.deepcopy(value, memo)
            if id(value) not in backups:
                backups[id(value)] = copy.deepcopy(value, memo)
            return backups[id(value)]

    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        backups.clear()
        try:
            return transact(self, transact_items)
        finally:
            backups.clear()

    models.copy = TableCopiedOnce()
    models.DynamoDBBackend.transact_write_items = transact_write_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    copy_each_table_once_per_transaction()
    app = DomainDispatcherApplication(create_backend_app)
    # threaded=False, processes=1: one request at a time (what run_simple
    # does with threaded=False), bound before the port is announced.
    server = make_server("127.0.0.1", args.port, app, threaded=False, processes=1)
    port = server.server_port
    if args.port_file:
        with open(args.port_file, "w", encoding="ascii") as f:
            f.write(f"{port}\n")
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
