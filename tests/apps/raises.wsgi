import json

CONFIG = json.loads("{not json")  # fails at import
application = None
