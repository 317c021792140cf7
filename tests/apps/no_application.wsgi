def create_app():
    def wsgi(environ, start_response):
        start_response("200 OK", [])
        return [b""]
    return wsgi


VERSION = "1.0"
