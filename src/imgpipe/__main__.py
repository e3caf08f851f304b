from imgpipe.cli.main import main

main()
