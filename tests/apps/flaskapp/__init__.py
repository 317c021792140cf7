"""A small Flask app with a factory, as the mod_wsgi guide describes."""

from flask import Flask, jsonify, request, session, url_for


def create_app():
    app = Flask(__name__)
    app.secret_key = "test-only-secret"

    @app.route("/")
    def index():
        return "Hello from a Flask factory\n"

    @app.route("/json", methods=["POST"])
    def echo_json():
        data = request.get_json()
        return jsonify(received=data, method=request.method)

    @app.route("/form", methods=["POST"])
    def form():
        return f"{request.form['name']} uploaded {len(request.files['file'].read())} bytes"

    @app.route("/count")
    def count():
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    @app.route("/where")
    def where():
        return jsonify(url=url_for("where", _external=True), root=request.script_root, path=request.path,
                       remote=request.remote_addr, args=request.args)

    @app.route("/template")
    def template():
        from flask import render_template_string
        return render_template_string("<p>{{ name }}</p>", name="<script>")

    return app
