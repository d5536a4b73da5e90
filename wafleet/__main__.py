from wafleet.cli import main

main()
