from localgpt.cli.main import main

main()
