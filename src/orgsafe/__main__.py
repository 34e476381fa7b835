from orgsafe.cli import main

main()
