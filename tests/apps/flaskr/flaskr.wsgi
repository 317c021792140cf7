from flaskr import create_app

application = create_app()
