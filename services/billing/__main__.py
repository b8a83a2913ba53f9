from fedhub.services.billing.app import main

main()
