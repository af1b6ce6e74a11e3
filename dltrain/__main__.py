from dltrain.cli import main

if __name__ == "__main__":  # not when a spawned process re-imports the parent's main module
    main()
