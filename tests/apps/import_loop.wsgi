# Never finishes importing: startup_timeout must stop it.
while True:
    pass
