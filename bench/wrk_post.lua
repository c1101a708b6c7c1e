-- wrk script: POST the body in the environment variable SCALE_BODY.
wrk.method = "POST"
wrk.body = os.getenv("SCALE_BODY")
