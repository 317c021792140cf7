"""The smallest Flask app, served by wasgi from inside the sandbox."""

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello from Flask inside wasgi!\n"


@app.route("/echo", methods=["POST"])
def echo():
    return request.get_data()


if __name__ == "__main__":
    # Guarded, as mod_wsgi requires: wasgi never runs this.
    app.run()
