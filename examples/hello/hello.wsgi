# The .wsgi file mod_wsgi users already have: wasgi runs it unchanged.
from app import app as application
