"""Do concurrent conditional writes have exactly one winner? (DynamoDB's guarantee)

Runs N races against each server: an item starts ``open``; several clients, released
together by a barrier, each try ``UpdateItem ... ConditionExpression "#s = :open"`` to claim it.
On DynamoDB exactly one succeeds. Prints how many races had more than one winner for moto's
stock server and for cloudlab's embedded server, measured in the same run. Target for ours: 0.

    .venv/bin/python bench/dynamodb_races.py [--races 1000] [--racers 4]
"""

from __future__ import annotations

import argparse
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from backend_rate import start_server


def count_double_wins(url: str, races: int, racers: int) -> tuple[int, int]:
    def client():
        return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t",
                            aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}))

    setup = client()
    setup.create_table(TableName="races", KeySchema=[{"AttributeName": "race", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "race", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
    clients = [client() for _ in range(racers)]
    barrier = threading.Barrier(racers)
    winners: list[int] = [0]
    results_lock = threading.Lock()

    def race(racer: int, race_id: str) -> None:
        barrier.wait()
        try:
            clients[racer].update_item(
                TableName="races", Key={"race": {"S": race_id}},
                UpdateExpression="SET #s = :won, winner = :me",
                ConditionExpression="#s = :open",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":open": {"S": "open"}, ":won": {"S": "won"}, ":me": {"N": str(racer)}})
            with results_lock:
                winners[0] += 1
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    double, none = 0, 0
    for number in range(races):
        race_id = f"race-{number}"
        setup.put_item(TableName="races", Item={"race": {"S": race_id}, "state": {"S": "open"}})
        winners[0] = 0
        threads = [threading.Thread(target=race, args=(racer, race_id)) for racer in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        double += winners[0] > 1
        none += winners[0] == 0
    return double, none


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=1000)
    parser.add_argument("--racers", type=int, default=4)
    args = parser.parse_args()
    for kind, name in (("stock", "stock ThreadedMotoServer"), ("embedded", "cloudlab embedded")):
        process, url = start_server(kind)
        try:
            double, none = count_double_wins(url, args.races, args.racers)
        finally:
            process.terminate()
            process.wait(timeout=10)
        print(f"{name:26s} {args.races} races x {args.racers} racers: "
              f"{double} races with more than one winner, {none} with none")


if __name__ == "__main__":
    main()
