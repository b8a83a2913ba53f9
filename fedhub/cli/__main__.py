from fedhub.cli import main

main()
