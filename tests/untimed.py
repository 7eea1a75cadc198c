"""History records without their wall-clock fields, which no two runs share."""


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]
