from imgpipe.cli.main import app

app(prog_name="imgpipe")
