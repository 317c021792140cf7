from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "never served"


app.run(host="0.0.0.0", port=5000)  # unguarded: the mistake the mod_wsgi guide warns about
application = app
