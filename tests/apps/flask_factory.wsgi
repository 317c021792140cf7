import sys
sys.path.insert(0, __file__.rsplit("/", 1)[0])  # as the mod_wsgi guide shows

from flaskapp import create_app
application = create_app()
