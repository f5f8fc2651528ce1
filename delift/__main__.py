from delift.cli import main

main()
