#!/usr/bin/env python3
"""Deletes every item of a DynamoDB table (the state-loss scenario of
tests/failover.rs and benches/failover.sh: a table emptied under load, as
a restore from an old backup or a mistaken delete would leave it).

Usage: dynamodb-delete-items.py ENDPOINT TABLE
Prints how many items it deleted. Needs boto3 (moto[server] brings it).
"""

import sys

import boto3

endpoint, table = sys.argv[1], sys.argv[2]
db = boto3.client(
    "dynamodb",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
keys = []
for page in db.get_paginator("scan").paginate(
    TableName=table, ProjectionExpression="pk, sk"
):
    keys += page["Items"]
for i in range(0, len(keys), 25):
    batch = [{"DeleteRequest": {"Key": k}} for k in keys[i : i + 25]]
    db.batch_write_item(RequestItems={table: batch})
print(len(keys))
